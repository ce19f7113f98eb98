"""Plain-PyTorch reference implementations the framework's results are compared against."""
