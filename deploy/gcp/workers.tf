# The execution workers: a regional managed instance group that holds no
# replicas (--replica_space 0), so VMs come and go freely, scaled by
# google_compute_region_autoscaler on executor utilisation.

# Autohealing: recreate a worker whose process is gone. /healthz, not
# /readyz: a draining or not yet linked worker is alive, just not ready.
resource "google_compute_health_check" "worker_alive" {
  name                = "${var.name_prefix}-worker-healthz"
  check_interval_sec  = 10
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 6

  http_health_check {
    port         = local.metrics_port
    request_path = "/healthz"
  }
}

resource "google_compute_instance_template" "worker" {
  name_prefix  = "${var.name_prefix}-worker-"
  region       = var.region
  machine_type = var.worker_machine_type
  tags         = [local.tags.worker]
  labels       = merge(var.labels, { app = "reapi", role = "worker" })

  disk {
    source_image = var.image
    boot         = true
    auto_delete  = true
    disk_size_gb = var.worker_disk_size_gb
    disk_type    = var.worker_disk_type
  }

  network_interface {
    subnetwork = local.subnetwork
  }

  service_account {
    email  = google_service_account.node.email
    scopes = ["cloud-platform"]
  }

  scheduling {
    automatic_restart   = true
    on_host_maintenance = "MIGRATE"
  }

  metadata = {
    enable-oslogin = "TRUE"
    startup-script = templatefile(local.startup_template, {
      role          = "worker"
      binary        = "reapi-worker"
      binary_url    = var.worker_binary_url
      binary_sha256 = var.worker_binary_sha256
      data_dir      = "/var/lib/reapi-worker"
      data_disk     = ""
      packages      = var.worker_packages
      args = concat(
        [
          "--schedulers", local.scheduler_list,
          "--data-dir", "/var/lib/reapi-worker",
          "--replica_space", "0",
          "--disk_size", var.worker_cache_size,
          "--drain_grace", "${var.drain_grace_seconds}s",
        ],
        var.worker_executors == null ? [] : ["--executors", tostring(var.worker_executors)],
        flatten([
          for p in concat(var.worker_pool == "" ? [] : ["pool=${var.worker_pool}"], var.worker_platform) :
          ["--platform", p]
        ]),
        local.common_flags,
      )
      stop_timeout_sec = local.worker_stop_timeout
      metrics_port     = local.metrics_port
      ops_agent        = false
      report           = true
      report_endpoints = local.scheduler_metrics
      report_pool      = var.worker_pool
      report_interval  = var.utilization_report_interval_seconds
      report_metric    = local.utilization_metric
    })
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_region_instance_group_manager" "workers" {
  name                      = "${var.name_prefix}-workers"
  region                    = var.region
  base_instance_name        = "${var.name_prefix}-worker"
  distribution_policy_zones = local.zones

  # Owned by the autoscaler when there is one (setting it would fight it).
  target_size = var.enable_autoscaler ? null : var.worker_count

  version {
    name              = "worker"
    instance_template = google_compute_instance_template.worker.self_link_unique
  }

  auto_healing_policies {
    health_check      = google_compute_health_check.worker_alive.id
    initial_delay_sec = 300
  }

  # A new template rolls out by creating replacements first (surge), then
  # deleting old VMs, which drain on SIGTERM. Regional groups need fixed
  # surge and unavailability of 0 or at least the number of zones.
  update_policy {
    type                  = "PROACTIVE"
    minimal_action        = "REPLACE"
    replacement_method    = "SUBSTITUTE"
    max_surge_fixed       = length(local.zones)
    max_unavailable_fixed = 0
  }

  depends_on = [
    google_storage_bucket_iam_member.node,
    google_project_iam_member.node,
    google_compute_router_nat.nat,
  ]
}

# Per-instance custom metric, utilisation target: each worker writes the
# cluster's used/total executors as its own gce_instance time series, so the
# group average is the cluster's utilisation and the autoscaler sizes the
# group to bring it to var.target_utilization (size ~ current size x
# utilisation / target). No filter: regional groups take per-instance
# metrics unfiltered. See README.md, "Autoscaling".
resource "google_compute_region_autoscaler" "workers" {
  count = var.enable_autoscaler ? 1 : 0

  name   = "${var.name_prefix}-workers"
  region = var.region
  target = google_compute_region_instance_group_manager.workers.id

  autoscaling_policy {
    min_replicas    = var.autoscaler_min_replicas
    max_replicas    = var.autoscaler_max_replicas
    cooldown_period = var.autoscaler_cooldown_seconds
    mode            = "ON"

    metric {
      name   = local.utilization_metric
      target = var.target_utilization
      type   = "GAUGE"
    }

    scale_in_control {
      time_window_sec = var.autoscaler_scale_in_window_seconds
      max_scaled_in_replicas {
        percent = var.autoscaler_scale_in_percent
      }
    }
  }
}
