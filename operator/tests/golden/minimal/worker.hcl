# Rendered by boundary-operator for net/edge; edits are overwritten.
disable_mlock = true

listener "tcp" {
  address = "0.0.0.0:9202"
  purpose = "proxy"
}

listener "tcp" {
  address     = "0.0.0.0:9203"
  purpose     = "ops"
  tls_disable = true
}

worker {
  public_addr       = "env://BOUNDARY_WORKER_PUBLIC_ADDR"
  initial_upstreams = ["controller.boundary:9201"]
  auth_storage_path = "/opt/boundary/data/auth"
  # The pod's own token, mounted from the operator's Secret; never written here.
  controller_generated_activation_token = "file:///opt/boundary/token/activation-token"

  tags {
    boundary_pki_worker = ["edge"]
    config_revision = ["036971288a67"]
    namespace = ["net"]
    type = ["kubernetes"]
  }
}
