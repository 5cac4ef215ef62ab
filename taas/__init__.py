"""taas: tracking as a service — charged-particle track reconstruction on CPU, GPU and FPGA."""

__version__ = "0.1.0"
