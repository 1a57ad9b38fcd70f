output "load_balancer_ip" {
  description = "Internal IP of the schedulers' load balancer."
  value       = google_compute_forwarding_rule.schedulers.ip_address
}

output "remote_executor" {
  description = "What to give Bazel: --remote_executor=<this> (it serves the cache too)."
  value       = "grpc://${google_compute_forwarding_rule.schedulers.ip_address}:${local.grpc_port}"
}

output "scheduler_addresses" {
  description = "Every scheduler's host:port, as given to --schedulers on every process."
  value       = [for ip in local.scheduler_ips : "${ip}:${local.grpc_port}"]
}

output "scheduler_metrics_urls" {
  description = "Each scheduler's Prometheus endpoint (reapi_executors, reapi_used_executors, ...), reachable inside the cluster's network tags."
  value       = [for endpoint in local.scheduler_metrics : "http://${endpoint}/metrics"]
}

output "bucket" {
  description = "The backup bucket (--gcs-bucket on every process)."
  value       = google_storage_bucket.backup.name
}

output "service_account" {
  description = "Service account of every reapi VM."
  value       = google_service_account.node.email
}

output "worker_instance_group" {
  description = "The execution workers' regional managed instance group."
  value       = google_compute_region_instance_group_manager.workers.instance_group
}

output "cas_instance_group" {
  description = "The CAS workers' stateful regional managed instance group."
  value       = google_compute_region_instance_group_manager.cas.instance_group
}

output "utilization_metric" {
  description = "The per-instance custom metric the execution workers write and the autoscaler reads."
  value       = local.utilization_metric
}
