"""Built-in explainers: exact TreeSHAP and linear attributions, KernelSHAP and LIME."""
