# Rendered by boundary-operator for net/edge; edits are overwritten.
disable_mlock = true
hcp_boundary_cluster_id = "4a3a8bd1-3f32-4bd4-a3cc-8bbf2d4b2e56"

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
  auth_storage_path = "/opt/boundary/data/auth"
  # The pod's own token, mounted from the operator's Secret; never written here.
  controller_generated_activation_token = "file:///opt/boundary/token/activation-token"

  tags {
    boundary_pki_worker = ["edge"]
    config_revision = ["69368e7199cd"]
    namespace = ["net"]
    region = ["eu-west-1"]
    type = ["edge", "kubernetes"]
    zz = ["1", "2"]
  }
}
