"""One module per kind of controller resource."""
