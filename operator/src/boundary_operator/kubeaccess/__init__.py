"""BoundaryKubernetesAccess: kubectl through Boundary. A ServiceAccount bound to the Role or
ClusterRole the resource names; a Boundary target to the apiserver with an alias and an egress
filter; a static credential store brokering the account's current token (from the TokenRequest
API, bound to a Secret we own, rotated at two thirds of its lifetime) with the cluster CA; and a
Boundary role granting authorize-session on the target to the resource's principals."""
