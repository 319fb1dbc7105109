//! The NVIDIA GPU operator with time-slicing, as data.
