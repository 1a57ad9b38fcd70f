# ---------------------------------------------------------------- placement

variable "project_id" {
  description = "GCP project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of every resource: the instance groups, the internal load balancer, the bucket (unless bucket_location says otherwise)."
  type        = string
  default     = "us-central1"
}

variable "zones" {
  description = "Zones to spread the VMs over. Empty: the first three zones of the region that are UP."
  type        = list(string)
  default     = []
}

variable "name_prefix" {
  description = "Prefix of every resource name (VMs, groups, firewall rules, the service account id, the bucket unless bucket_name is set). Lower-case letters, digits and dashes."
  type        = string
  default     = "reapi"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,19}$", var.name_prefix))
    error_message = "name_prefix must start with a letter and have at most 20 lower-case letters, digits or dashes."
  }
}

variable "labels" {
  description = "Labels added to the VMs, disks and bucket."
  type        = map(string)
  default     = {}
}

# ------------------------------------------------------------------ network

variable "subnetwork" {
  description = "Name of an existing subnetwork in var.region that the VMs, and the load balancer's address, live in. Its network is used for the firewall rules and Cloud NAT."
  type        = string
  default     = "default"
}

variable "client_source_ranges" {
  description = "CIDR ranges allowed to reach the schedulers' gRPC port through the internal load balancer (the machines that run Bazel). The load balancer passes the client's own address through, so this is what the firewall sees."
  type        = list(string)
  default     = ["10.0.0.0/8"]
}

variable "load_balancer_ip" {
  description = "Internal IP for the load balancer's forwarding rule, inside the subnetwork. Null: one is allocated."
  type        = string
  default     = null
}

variable "allow_global_access" {
  description = "Let clients in other regions of the same VPC (or connected by VPN/Interconnect) reach the internal load balancer."
  type        = bool
  default     = false
}

variable "create_cloud_nat" {
  description = "Create a Cloud Router and Cloud NAT for the subnetwork. The VMs have no external IP and need egress to download the binaries, Debian packages and the Ops Agent. Set false when the subnetwork already has NAT (a second NAT on the same subnetwork is refused)."
  type        = bool
  default     = true
}

variable "enable_iap_ssh" {
  description = "Add a firewall rule allowing SSH from Identity-Aware Proxy's range (35.235.240.0/20), for `gcloud compute ssh --tunnel-through-iap`."
  type        = bool
  default     = true
}

# ----------------------------------------------------------------- binaries

variable "scheduler_binary_url" {
  description = "Where the startup script downloads reapi-scheduler from at every boot: an https:// URL, or gs://BUCKET/OBJECT read with the VMs' service account (give it roles/storage.objectViewer there, or put the object in the backup bucket). Build on Debian 12 or older (glibc <= 2.36) or statically."
  type        = string

  validation {
    condition     = can(regex("^(https?|gs)://", var.scheduler_binary_url))
    error_message = "scheduler_binary_url must start with https://, http:// or gs://."
  }
}

variable "scheduler_binary_sha256" {
  description = "Expected SHA-256 (hex) of the scheduler binary; a mismatch fails the boot. Empty: not checked."
  type        = string
  default     = ""
}

variable "worker_binary_url" {
  description = "Where the startup script downloads reapi-worker from at every boot (execution and CAS workers): https:// or gs://BUCKET/OBJECT, as for scheduler_binary_url."
  type        = string

  validation {
    condition     = can(regex("^(https?|gs)://", var.worker_binary_url))
    error_message = "worker_binary_url must start with https://, http:// or gs://."
  }
}

variable "worker_binary_sha256" {
  description = "Expected SHA-256 (hex) of the worker binary; a mismatch fails the boot. Empty: not checked."
  type        = string
  default     = ""
}

variable "image" {
  description = "Boot image of every VM (a Debian image or family)."
  type        = string
  default     = "debian-cloud/debian-12"
}

# --------------------------------------------------------------- schedulers

variable "scheduler_count" {
  description = "Number of schedulers. Each gets a static internal IP: every scheduler and worker is given the full list (--schedulers), because a worker must link to every scheduler."
  type        = number
  default     = 3

  validation {
    condition     = var.scheduler_count >= 1
    error_message = "scheduler_count must be at least 1."
  }
}

variable "scheduler_machine_type" {
  description = "Machine type of the schedulers."
  type        = string
  default     = "n2-standard-4"
}

variable "scheduler_disk_size_gb" {
  description = "Boot disk of a scheduler, in GB; its share of the action cache lives there (/var/lib/reapi)."
  type        = number
  default     = 50
}

variable "metadata_replica_count" {
  description = "--metadata_replica_count: schedulers holding each action cache entry."
  type        = number
  default     = 3
}

# ------------------------------------------------------- execution workers

variable "worker_machine_type" {
  description = "Machine type of the execution workers."
  type        = string
  default     = "n2-standard-8"
}

variable "worker_disk_size_gb" {
  description = "Boot disk of an execution worker, in GB. Holds the input cache (worker_cache_size) and the actions' work directories."
  type        = number
  default     = 100
}

variable "worker_disk_type" {
  description = "Boot disk type of the execution workers."
  type        = string
  default     = "pd-balanced"
}

variable "worker_cache_size" {
  description = "--disk_size of an execution worker: its cache of inputs fetched from the cluster CAS (it holds no replicas: --replica_space 0)."
  type        = string
  default     = "40G"
}

variable "worker_executors" {
  description = "--executors of an execution worker. Null: one per CPU."
  type        = number
  default     = null
}

variable "worker_pool" {
  description = "Value of the `pool` platform property the execution workers offer (--platform pool=VALUE); the utilisation reported for autoscaling counts only executors of this pool. Empty: no such property, and every pool counts."
  type        = string
  default     = "default"
}

variable "worker_platform" {
  description = "Further --platform KEY=VALUE properties of the execution workers."
  type        = list(string)
  default     = []
}

variable "worker_packages" {
  description = "Debian packages installed on the execution workers at first boot: what the actions need (compilers, interpreters) unless the build brings hermetic toolchains."
  type        = list(string)
  default     = ["build-essential", "python3", "zip", "unzip"]
}

variable "drain_grace_seconds" {
  description = "--drain_grace of every worker, in seconds: how long SIGTERM lets running actions finish. systemd's TimeoutStopSec is this plus 60 s. Compute Engine only waits about 90-120 s between the ACPI shutdown and power-off unless graceful shutdown is enabled (see README.md, \"Scale-in and drain\")."
  type        = number
  default     = 600
}

variable "worker_count" {
  description = "Size of the execution group when enable_autoscaler is false (with the autoscaler, its min/max apply)."
  type        = number
  default     = 3
}

# --------------------------------------------------------------- autoscaler

variable "enable_autoscaler" {
  description = "Scale the execution group on executor utilisation (google_compute_region_autoscaler on the custom metric). False: a fixed worker_count."
  type        = bool
  default     = true
}

variable "target_utilization" {
  description = "Executor utilisation (used / total executors, 0-1) the autoscaler keeps the execution group at."
  type        = number
  default     = 0.25

  validation {
    condition     = var.target_utilization > 0 && var.target_utilization <= 1
    error_message = "target_utilization must be in (0, 1]."
  }
}

variable "autoscaler_min_replicas" {
  description = "Fewest execution workers. At least 1: a per-instance metric needs one VM to report it."
  type        = number
  default     = 1

  validation {
    condition     = var.autoscaler_min_replicas >= 1
    error_message = "autoscaler_min_replicas must be at least 1 (per-instance metrics cannot scale a group to zero)."
  }
}

variable "autoscaler_max_replicas" {
  description = "Most execution workers."
  type        = number
  default     = 20
}

variable "autoscaler_cooldown_seconds" {
  description = "Autoscaler initialization period: seconds after a VM starts before its metric is used (boot, packages, binary download, linking)."
  type        = number
  default     = 180
}

variable "autoscaler_scale_in_percent" {
  description = "At most this percentage of the execution group is removed within autoscaler_scale_in_window_seconds."
  type        = number
  default     = 20
}

variable "autoscaler_scale_in_window_seconds" {
  description = "Window of the scale-in control, in seconds."
  type        = number
  default     = 600
}

variable "utilization_report_interval_seconds" {
  description = "How often each execution worker writes the utilisation metric to Cloud Monitoring (at least 10)."
  type        = number
  default     = 30

  validation {
    condition     = var.utilization_report_interval_seconds >= 10
    error_message = "utilization_report_interval_seconds must be at least 10 (Cloud Monitoring accepts one point per series every 5 s)."
  }
}

# -------------------------------------------------------------- CAS workers

variable "cas_worker_count" {
  description = "Number of CAS workers (--executors 0), each with a persistent data disk kept by the stateful group. At least replica_count for full redundancy."
  type        = number
  default     = 3
}

variable "cas_machine_type" {
  description = "Machine type of the CAS workers."
  type        = string
  default     = "n2-standard-4"
}

variable "cas_disk_size_gb" {
  description = "Data disk of a CAS worker, in GB (mounted at /var/lib/reapi-worker); 90% of it is given as --replica_space."
  type        = number
  default     = 500
}

variable "cas_disk_type" {
  description = "Data disk type of the CAS workers."
  type        = string
  default     = "pd-balanced"
}

variable "replica_count" {
  description = "--replica_count on every process: copies of each blob in the cluster CAS."
  type        = number
  default     = 3
}

# ------------------------------------------------------------------- bucket

variable "bucket_name" {
  description = "Name of the backup bucket (--gcs-bucket). Null: \"<project_id>-<name_prefix>-cas\"."
  type        = string
  default     = null
}

variable "bucket_location" {
  description = "Location of the backup bucket. Null: var.region (same-region traffic is free)."
  type        = string
  default     = null
}

variable "gcs_prefix" {
  description = "--gcs-prefix: object-name prefix in the bucket."
  type        = string
  default     = "reapi"
}

variable "bucket_delete_after_days" {
  description = "Lifecycle rule: delete objects older than this many days (a bucket has no access times, so this is by age of write). 0: keep everything."
  type        = number
  default     = 30
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the bucket with its objects."
  type        = bool
  default     = false
}

# ------------------------------------------------------------------ metrics

variable "install_ops_agent" {
  description = "Install the Ops Agent on the schedulers and CAS workers, with a Prometheus receiver scraping their /metrics into Cloud Monitoring (prometheus.googleapis.com/reapi_*). The autoscaler does not depend on it."
  type        = bool
  default     = true
}
