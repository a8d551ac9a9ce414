# /etc/boundary-agent/agent.hcl for a machine whose resolver is systemd-resolved, as most Linux
# laptops' is (README.md, "Installing the agent on a laptop"; every field is in its table).

# Your alias domains: resolved sends names in them, and only them, to the agent; every other
# name keeps its usual resolver. Here: every name ending in .boundary.
resolver_domains = ["boundary"]
resolver_mode    = "resolved"

# The link and the DNS address that boundary-agent.service sets up before the agent starts.
interface_to_use     = "boundary0"
dns_listen_addresses = ["100.64.0.1:53"]
# Aliases get 100.64.0.2 onwards (the prefix's first address is the DNS address above).
v4_prefix = "100.64.0.0/10"
