"""Every query the library runs, one module per concern; callers get rows, messages or small records back."""
