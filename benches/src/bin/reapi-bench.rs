//! `reapi-bench`: a load generator speaking plain REAPI v2 over gRPC to any
//! endpoint. See `reapi-bench --help` and BENCHMARKS.md.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reapi_benches::limits::{limits, LimitsArgs};
use reapi_benches::options::Common;
use reapi_benches::report::{print_table, write_json, Output, Report};
use reapi_benches::scenarios::{
    ac, batch, cas, digest_functions, dispatch, execute, find_missing, zstd,
};
use reapi_benches::summary::{summarize, SummarizeArgs};

#[derive(Parser, Debug)]
#[command(
    name = "reapi-bench",
    version,
    about = "Load generator for REAPI v2 servers (CAS, ByteStream, ActionCache, Execution)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// ByteStream Write of unique blobs.
    CasWrite(cas::WriteArgs),
    /// ByteStream Read of blobs uploaded during set-up.
    CasRead(cas::ReadArgs),
    /// BatchUpdateBlobs / BatchReadBlobs of many small blobs.
    Batch(batch::BatchArgs),
    /// FindMissingBlobs with many digests per request.
    FindMissing(find_missing::FindMissingArgs),
    /// GetActionResult hits and misses, UpdateActionResult.
    Ac(ac::AcArgs),
    /// Execute of trivial actions with warm inputs.
    Execute(execute::ExecuteArgs),
    /// Dispatch rate and queue-to-start latency of a scheduler, with
    /// simulated workers speaking the cluster protocol.
    Dispatch(dispatch::DispatchArgs),
    /// Occupies the executors, queues many actions and reads the server's
    /// memory growth (needs --server-pid), then cancels them.
    QueueFill(execute::QueueFillArgs),
    /// ByteStream write and read of one compressible blob, plain and
    /// zstd-compressed; prints a Markdown table.
    CasZstd(zstd::ZstdArgs),
    /// ByteStream and batch writes under SHA-256 and BLAKE3 in alternation;
    /// prints a Markdown table.
    CasDigest(digest_functions::DigestArgs),
    /// Measures this machine's limits (loopback, SHA-256, spawn, synced
    /// commits).
    Limits(LimitsArgs),
    /// Prints Markdown from a results directory.
    Summarize(SummarizeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reapi-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (common, result) = match cli.command {
        Command::Limits(args) => {
            return match limits(args) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::CasZstd(args) => {
            return match runtime.block_on(zstd::zstd(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::CasDigest(args) => {
            return match runtime.block_on(digest_functions::digest_functions(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Summarize(args) => {
            return match summarize(args) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::CasWrite(args) => (args.common.clone(), runtime.block_on(cas::write(args))),
        Command::CasRead(args) => (args.common.clone(), runtime.block_on(cas::read(args))),
        Command::Batch(args) => (args.common.clone(), runtime.block_on(batch::batch(args))),
        Command::FindMissing(args) => (
            args.common.clone(),
            runtime.block_on(find_missing::find_missing(args)),
        ),
        Command::Ac(args) => (args.common.clone(), runtime.block_on(ac::ac(args))),
        Command::Execute(args) => (
            args.common.clone(),
            runtime.block_on(execute::execute(args)),
        ),
        Command::Dispatch(args) => (
            args.common.clone(),
            runtime.block_on(dispatch::dispatch(args)),
        ),
        Command::QueueFill(args) => (
            args.common.clone(),
            runtime.block_on(execute::queue_fill(args)),
        ),
    };
    match result {
        Ok(reports) => match output(&common, &reports) {
            Ok(()) if reports.iter().all(|r| r.ops > 0) => ExitCode::SUCCESS,
            Ok(()) => fail("a scenario completed no request"),
            Err(e) => fail(&e),
        },
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("reapi-bench: {message}");
    ExitCode::FAILURE
}

fn output(common: &Common, reports: &[Report]) -> Result<(), String> {
    let json_to_stdout = common.json.as_deref() == Some("-");
    {
        let mut table: Box<dyn std::io::Write> = if json_to_stdout {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        };
        print_table(&mut table, reports).map_err(|e| e.to_string())?;
        table.flush().map_err(|e| e.to_string())?;
    }
    if let Some(path) = &common.json {
        let output = Output {
            tool: "reapi-bench",
            version: env!("CARGO_PKG_VERSION"),
            target: &common.target,
            instance: &common.instance,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            reports,
        };
        write_json(path, &output)?;
    }
    Ok(())
}
