# The CAS workers: reapi-worker with --executors 0, holding the cluster CAS
# on a persistent data disk. A stateful regional managed instance group keeps
# each VM's data disk (and so its worker id, stored in the data directory)
# across autohealing and re-creation; it is not autoscaled (stateful groups
# cannot be) and rolls out a new template only when told to (OPPORTUNISTIC).

resource "google_compute_instance_template" "cas" {
  name_prefix  = "${var.name_prefix}-cas-"
  region       = var.region
  machine_type = var.cas_machine_type
  tags         = [local.tags.cas]
  labels       = merge(var.labels, { app = "reapi", role = "cas" })

  disk {
    source_image = var.image
    boot         = true
    auto_delete  = true
    disk_size_gb = 20
    disk_type    = "pd-balanced"
  }

  # Blank data disk; the startup script formats it once and mounts it at the
  # data directory. Kept by the group's stateful policy below.
  disk {
    device_name  = "reapi-cas"
    boot         = false
    auto_delete  = false
    type         = "PERSISTENT"
    disk_size_gb = var.cas_disk_size_gb
    disk_type    = var.cas_disk_type
    labels       = merge(var.labels, { app = "reapi", role = "cas" })
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
      role          = "cas"
      binary        = "reapi-worker"
      binary_url    = var.worker_binary_url
      binary_sha256 = var.worker_binary_sha256
      data_dir      = "/var/lib/reapi-worker"
      data_disk     = "reapi-cas"
      packages      = []
      args = concat([
        "--schedulers", local.scheduler_list,
        "--data-dir", "/var/lib/reapi-worker",
        "--listen", "0.0.0.0:${local.cas_port}",
        # Expanded by systemd from /etc/default/reapi, which the startup
        # script writes with this VM's internal IP.
        "--advertise", "$${SELF_IP}:${local.cas_port}",
        "--executors", "0",
        "--replica_space", "${floor(var.cas_disk_size_gb * 0.9)}G",
        "--drain_grace", "${var.drain_grace_seconds}s",
      ], local.common_flags)
      stop_timeout_sec = local.worker_stop_timeout
      metrics_port     = local.metrics_port
      ops_agent        = var.install_ops_agent
      report           = false
      report_endpoints = []
      report_pool      = ""
      report_interval  = 0
      report_metric    = ""
    })
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_region_instance_group_manager" "cas" {
  name                      = "${var.name_prefix}-cas"
  region                    = var.region
  base_instance_name        = "${var.name_prefix}-cas"
  distribution_policy_zones = local.zones
  target_size               = var.cas_worker_count

  version {
    name              = "cas"
    instance_template = google_compute_instance_template.cas.self_link_unique
  }

  stateful_disk {
    device_name = "reapi-cas"
    delete_rule = "NEVER"
  }

  # Keeps a re-created CAS worker at the same address (its id, which the
  # placement hashes, lives on the data disk either way).
  stateful_internal_ip {
    interface_name = "nic0"
    delete_rule    = "ON_PERMANENT_INSTANCE_DELETION"
  }

  auto_healing_policies {
    health_check      = google_compute_health_check.worker_alive.id
    initial_delay_sec = 300
  }

  # Stateful regional groups need proactive redistribution off and
  # RECREATE (same names, same disks). OPPORTUNISTIC: a new template is used
  # only when a VM is recreated (autohealing, or by hand one at a time, see
  # README.md), never for all CAS workers at once.
  update_policy {
    type                         = "OPPORTUNISTIC"
    minimal_action               = "REPLACE"
    instance_redistribution_type = "NONE"
    replacement_method           = "RECREATE"
    max_surge_fixed              = 0
    max_unavailable_fixed        = length(local.zones)
  }

  depends_on = [
    google_storage_bucket_iam_member.node,
    google_project_iam_member.node,
    google_compute_router_nat.nat,
  ]
}
