pytest_plugins = ["boundary_devstack.pytest_plugin"]
