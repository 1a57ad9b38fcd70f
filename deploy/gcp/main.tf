# A reapi cluster on Compute Engine: schedulers behind an internal TCP load
# balancer, an autoscaled group of execution workers, a stateful group of CAS
# workers, and a GCS bucket as the extra copy of everything. Untested against
# a real project: see README.md.

data "google_compute_zones" "up" {
  region = var.region
  status = "UP"
}

data "google_compute_subnetwork" "selected" {
  name   = var.subnetwork
  region = var.region
}

locals {
  zones = length(var.zones) > 0 ? var.zones : slice(
    sort(data.google_compute_zones.up.names), 0, min(3, length(data.google_compute_zones.up.names))
  )

  network    = data.google_compute_subnetwork.selected.network
  subnetwork = data.google_compute_subnetwork.selected.self_link

  grpc_port    = 8980 # schedulers: every REAPI service (what Bazel talks to)
  cas_port     = 8981 # CAS workers: their share of the cluster CAS
  metrics_port = 9090 # every process: /metrics, /healthz, /readyz

  tags = {
    scheduler = "${var.name_prefix}-scheduler"
    worker    = "${var.name_prefix}-worker"
    cas       = "${var.name_prefix}-cas"
  }

  bucket_name = coalesce(var.bucket_name, "${var.project_id}-${var.name_prefix}-cas")

  # The custom metric each execution worker writes (see README.md, "Autoscaling").
  utilization_metric = "custom.googleapis.com/reapi/executor_utilization"

  # Every scheduler, by static address. Workers and schedulers get the whole
  # list, not the load balancer: a worker must link to every scheduler, and a
  # connection through a TCP load balancer reaches only one.
  scheduler_ips       = google_compute_address.scheduler[*].address
  scheduler_list      = join(",", [for ip in local.scheduler_ips : "${ip}:${local.grpc_port}"])
  scheduler_metrics   = [for ip in local.scheduler_ips : "${ip}:${local.metrics_port}"]
  scheduler_zones     = [for i in range(var.scheduler_count) : local.zones[i % length(local.zones)]]
  worker_stop_timeout = var.drain_grace_seconds + 60

  # Flags every process takes.
  common_flags = concat([
    "--metrics_listen", "0.0.0.0:${local.metrics_port}",
    "--replica_count", tostring(var.replica_count),
    "--gcs-bucket", google_storage_bucket.backup.name,
  ], var.gcs_prefix == "" ? [] : ["--gcs-prefix", var.gcs_prefix])

  startup_template = "${path.module}/templates/startup.sh.tftpl"
}

# ------------------------------------------------------------ service account

# One identity for every reapi VM: objects in the backup bucket, custom
# metrics (the utilisation the autoscaler reads, the Ops Agent's), logs.
resource "google_service_account" "node" {
  account_id   = "${var.name_prefix}-node"
  display_name = "reapi cluster VMs (${var.name_prefix})"
}

resource "google_project_iam_member" "node" {
  for_each = toset(["roles/monitoring.metricWriter", "roles/logging.logWriter"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.node.member
}

# ------------------------------------------------------------- backup bucket

resource "google_storage_bucket" "backup" {
  name                        = local.bucket_name
  location                    = coalesce(var.bucket_location, var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket_force_destroy
  labels                      = merge(var.labels, { app = "reapi" })

  dynamic "lifecycle_rule" {
    for_each = var.bucket_delete_after_days > 0 ? [var.bucket_delete_after_days] : []
    content {
      condition {
        age = lifecycle_rule.value
        # Only reapi's objects (keys: <prefix>/cas/..., <prefix>/ac/...), not
        # e.g. binaries kept elsewhere in the bucket.
        matches_prefix = var.gcs_prefix == "" ? null : ["${var.gcs_prefix}/"]
      }
      action {
        type = "Delete"
      }
    }
  }
}

resource "google_storage_bucket_iam_member" "node" {
  bucket = google_storage_bucket.backup.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.node.member
}
