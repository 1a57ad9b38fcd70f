# Firewall rules on the subnetwork's network, and optional Cloud NAT for the
# VMs' egress (they have no external addresses).

# Bazel (and any REAPI client) to the schedulers, through the internal load
# balancer: a passthrough balancer keeps the client's address, so the rule
# names the clients.
resource "google_compute_firewall" "clients" {
  name          = "${var.name_prefix}-allow-clients"
  network       = local.network
  direction     = "INGRESS"
  source_ranges = var.client_source_ranges
  target_tags   = [local.tags.scheduler]

  allow {
    protocol = "tcp"
    ports    = [tostring(local.grpc_port)]
  }
}

# Google's health checkers: the load balancer's (schedulers' /readyz) and
# autohealing's (workers' /healthz).
resource "google_compute_firewall" "health_checks" {
  name          = "${var.name_prefix}-allow-health-checks"
  network       = local.network
  direction     = "INGRESS"
  source_ranges = ["35.191.0.0/16", "130.211.0.0/22"]
  target_tags   = values(local.tags)

  allow {
    protocol = "tcp"
    ports    = [tostring(local.metrics_port)]
  }
}

# Inside the cluster: workers link to every scheduler (8980), schedulers and
# workers read and write the CAS workers' shares (8981), execution workers
# read the schedulers' /metrics for the utilisation they report (9090).
resource "google_compute_firewall" "internal" {
  name        = "${var.name_prefix}-allow-internal"
  network     = local.network
  direction   = "INGRESS"
  source_tags = values(local.tags)
  target_tags = values(local.tags)

  allow {
    protocol = "tcp"
    ports    = [tostring(local.grpc_port), tostring(local.cas_port), tostring(local.metrics_port)]
  }
}

resource "google_compute_firewall" "iap_ssh" {
  count = var.enable_iap_ssh ? 1 : 0

  name          = "${var.name_prefix}-allow-iap-ssh"
  network       = local.network
  direction     = "INGRESS"
  source_ranges = ["35.235.240.0/20"]
  target_tags   = values(local.tags)

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_router" "nat" {
  count = var.create_cloud_nat ? 1 : 0

  name    = "${var.name_prefix}-nat"
  region  = var.region
  network = local.network
}

resource "google_compute_router_nat" "nat" {
  count = var.create_cloud_nat ? 1 : 0

  name                               = "${var.name_prefix}-nat"
  region                             = var.region
  router                             = google_compute_router.nat[0].name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = local.subnetwork
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }
}
