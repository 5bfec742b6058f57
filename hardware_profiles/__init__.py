"""Hardware profiles: what each edge device is and which model targets it runs best."""

from hardware_profiles.errors import ProfileError
from hardware_profiles.loader import get_profile, load_profile_file, load_profiles, profile_dirs
from hardware_profiles.schema import PRECISIONS, OnnxTarget, Profile, TfliteTarget

__all__ = [
    "PRECISIONS",
    "OnnxTarget",
    "Profile",
    "ProfileError",
    "TfliteTarget",
    "get_profile",
    "load_profile_file",
    "load_profiles",
    "profile_dirs",
]
