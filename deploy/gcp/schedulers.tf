# The schedulers: fixed VMs with static internal addresses (the cluster's
# member list), spread over the zones, grouped per zone in unmanaged instance
# groups behind an internal passthrough TCP load balancer. Bazel points at the
# load balancer; every scheduler accepts every request.

resource "google_compute_address" "scheduler" {
  count = var.scheduler_count

  name         = "${var.name_prefix}-scheduler-${count.index}"
  region       = var.region
  subnetwork   = local.subnetwork
  address_type = "INTERNAL"
}

resource "google_compute_instance" "scheduler" {
  count = var.scheduler_count

  name                      = "${var.name_prefix}-scheduler-${count.index}"
  zone                      = local.scheduler_zones[count.index]
  machine_type              = var.scheduler_machine_type
  tags                      = [local.tags.scheduler]
  labels                    = merge(var.labels, { app = "reapi", role = "scheduler" })
  allow_stopping_for_update = true

  boot_disk {
    initialize_params {
      image = var.image
      size  = var.scheduler_disk_size_gb
      type  = "pd-balanced"
    }
  }

  network_interface {
    subnetwork = local.subnetwork
    network_ip = google_compute_address.scheduler[count.index].address
  }

  service_account {
    email  = google_service_account.node.email
    scopes = ["cloud-platform"]
  }

  metadata = {
    enable-oslogin = "TRUE"
    # In metadata (not metadata_startup_script) so that a change is applied
    # in place; it takes effect at the next boot.
    startup-script = templatefile(local.startup_template, {
      role          = "scheduler"
      binary        = "reapi-scheduler"
      binary_url    = var.scheduler_binary_url
      binary_sha256 = var.scheduler_binary_sha256
      data_dir      = "/var/lib/reapi"
      data_disk     = ""
      packages      = []
      args = concat([
        "--listen", "0.0.0.0:${local.grpc_port}",
        "--advertise", "${google_compute_address.scheduler[count.index].address}:${local.grpc_port}",
        "--schedulers", local.scheduler_list,
        "--data-dir", "/var/lib/reapi",
        "--metadata_replica_count", tostring(var.metadata_replica_count),
      ], local.common_flags)
      # The scheduler drains for up to 60 s on SIGTERM.
      stop_timeout_sec = 90
      metrics_port     = local.metrics_port
      ops_agent        = var.install_ops_agent
      report           = false
      report_endpoints = []
      report_pool      = ""
      report_interval  = 0
      report_metric    = ""
    })
  }

  depends_on = [
    google_storage_bucket_iam_member.node,
    google_project_iam_member.node,
    google_compute_router_nat.nat,
  ]
}

# Unmanaged instance groups are zonal: one per zone that holds a scheduler.
resource "google_compute_instance_group" "schedulers" {
  for_each = toset(local.scheduler_zones)

  name = "${var.name_prefix}-schedulers-${each.key}"
  zone = each.key
  instances = [
    for i, instance in google_compute_instance.scheduler : instance.self_link
    if local.scheduler_zones[i] == each.key
  ]

  named_port {
    name = "grpc"
    port = local.grpc_port
  }
}

# Healthy while /readyz answers 200: it turns 503 as soon as a scheduler
# starts draining, so the balancer stops sending it new connections.
resource "google_compute_region_health_check" "scheduler_ready" {
  name                = "${var.name_prefix}-scheduler-readyz"
  region              = var.region
  check_interval_sec  = 5
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 2

  http_health_check {
    port         = local.metrics_port
    request_path = "/readyz"
  }
}

resource "google_compute_region_backend_service" "schedulers" {
  name                            = "${var.name_prefix}-schedulers"
  region                          = var.region
  load_balancing_scheme           = "INTERNAL"
  protocol                        = "TCP"
  health_checks                   = [google_compute_region_health_check.scheduler_ready.id]
  connection_draining_timeout_sec = 60

  dynamic "backend" {
    for_each = google_compute_instance_group.schedulers
    content {
      group          = backend.value.self_link
      balancing_mode = "CONNECTION"
    }
  }
}

resource "google_compute_forwarding_rule" "schedulers" {
  name                  = "${var.name_prefix}-schedulers"
  region                = var.region
  load_balancing_scheme = "INTERNAL"
  backend_service       = google_compute_region_backend_service.schedulers.id
  ip_protocol           = "TCP"
  ports                 = [tostring(local.grpc_port)]
  network               = local.network
  subnetwork            = local.subnetwork
  ip_address            = var.load_balancer_ip
  allow_global_access   = var.allow_global_access
}
