"""WeCom API groups, one module each, bound to a client as ``client.<group>``."""
