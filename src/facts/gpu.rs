//! NVIDIA GPUs through NVML, loaded at run time so the binary runs on machines without a driver.
