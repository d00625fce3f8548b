//! `make bench`: vaurien against direct connections and haproxy, on loopback, with every
//! process started (and killed) by the bench itself. Results go to stdout as markdown,
//! progress to stderr.
//!
//! Options (after `--`, or `make bench BENCH_ARGS=...`): `--quick` (1 repetition, short runs,
//! small sizes), `--only W1,W2` (workload names), `--reps N` (default 3), `--vaurien-arg ARG`
//! (repeatable: passed to every vaurien started, e.g. `--vaurien-arg --bufsize=65536`).

mod many;
mod procs;
mod report;
mod setup;
mod traffic;
mod workloads;

use std::io::Write;
use std::time::Instant;

use report::{Results, Sample, Target};
use setup::Env;
use workloads::Workload;

const USAGE: &str =
    "usage: cargo bench --bench bench -- [--quick] [--only W1,W2] [--reps N] [--vaurien-arg ARG]...";

struct Options {
    quick: bool,
    only: Option<Vec<String>>,
    reps: Option<usize>,
    vaurien_args: Vec<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve-echo") {
        std::process::exit(traffic::serve_echo_main());
    }
    // Through a function so every guard (processes, temp dir) is dropped before exiting.
    std::process::exit(run(&args));
}

fn run(args: &[String]) -> i32 {
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}\n{USAGE}");
            return 2;
        }
    };
    let (soft, hard) = procs::raise_open_files();
    let env = match Env::new(opts.quick, hard) {
        Ok(mut env) => {
            env.vaurien_args = opts.vaurien_args.clone();
            env
        }
        Err(e) => {
            eprintln!("bench: {e}");
            return 1;
        }
    };
    let all = workloads::all(&env);
    let selected = match select(&all, opts.only.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: {e}");
            return 2;
        }
    };
    let reps = opts.reps.unwrap_or(if opts.quick { 1 } else { 3 });
    print_header(&env, reps, soft, hard);
    let started = Instant::now();
    let mut results = Results::default();
    for w in selected {
        run_workload(&env, w, reps, &mut results);
    }
    print_results(&env, &results, started);
    i32::from(results.failed())
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        quick: false,
        only: None,
        reps: None,
        vaurien_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--only" => {
                let list = it.next().ok_or("--only needs a workload list")?;
                opts.only = Some(list.split(',').map(|w| w.trim().to_string()).collect());
            }
            "--reps" => {
                let n = it.next().ok_or("--reps needs a number")?;
                match n.parse::<usize>() {
                    Ok(n) if n > 0 => opts.reps = Some(n),
                    _ => return Err(format!("--reps {n}: not a positive number")),
                }
            }
            "--vaurien-arg" => {
                let a = it.next().ok_or("--vaurien-arg needs an argument")?;
                opts.vaurien_args.push(a.clone());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

fn select<'a>(all: &'a [Workload], only: Option<&[String]>) -> Result<Vec<&'a Workload>, String> {
    let Some(only) = only else {
        return Ok(all.iter().collect());
    };
    let names: Vec<&str> = all.iter().map(|w| w.name).collect();
    if let Some(bad) = only.iter().find(|o| !names.contains(&o.as_str())) {
        return Err(format!(
            "no workload {bad:?}; workloads: {}",
            names.join(", ")
        ));
    }
    Ok(all
        .iter()
        .filter(|w| only.iter().any(|o| o == w.name))
        .collect())
}

fn print_header(env: &Env, reps: usize, soft: u64, hard: u64) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = first_line("uname", &["-r"]);
    println!("# vaurien benchmark\n");
    println!(
        "Machine: {cores} cores (nproc), kernel {kernel} (uname -r). Everything runs on \
         loopback and the load generators and backends share the {cores} cores with the \
         proxy, so the numbers are relative: compare targets within a workload, not with \
         other machines.\n"
    );
    println!(
        "Method: {} run, {reps} repetition(s) per measurement, targets interleaved (A B C D, \
         then D C B A, ...), a fresh proxy and backend for every measurement; medians with \
         min–max over repetitions, ratios are of medians. Open files: soft {soft}, hard \
         {hard}.\n",
        if env.quick { "quick" } else { "full" }
    );
    println!("Versions:");
    println!(
        "- vaurien: {} ({})",
        first_line(&env.vaurien.display().to_string(), &["-V"]),
        env.vaurien.display()
    );
    let tools: [(&str, &Option<std::path::PathBuf>, &[&str]); 5] = [
        ("haproxy", &env.haproxy, &["-v"]),
        ("redis-benchmark", &env.redis_benchmark, &["--version"]),
        ("redis-server", &env.redis_server, &["--version"]),
        ("wrk", &env.wrk, &["-v"]),
        ("nginx", &env.nginx, &["-v"]),
    ];
    for (name, path, args) in tools {
        match path {
            Some(p) => println!("- {name}: {}", procs::version_line(p, args)),
            None if name == "haproxy" => println!("- haproxy: not installed; no haproxy target"),
            None => println!("- {name}: not installed; the workloads using it are skipped"),
        }
    }
    if env.haproxy.is_some() && env.haproxy_maxconn < 20_000 {
        println!(
            "\nhaproxy runs with maxconn {} instead of 20000: it needs two fds per connection \
             and will not start above the open-files hard limit ({hard}).",
            env.haproxy_maxconn
        );
    }
    println!();
    let _ = std::io::stdout().flush();
}

fn first_line(program: &str, args: &[&str]) -> String {
    procs::version_line(std::path::Path::new(program), args)
}

fn run_workload(env: &Env, w: &Workload, reps: usize, results: &mut Results) {
    println!("## {}\n", w.name);
    if let Some(reason) = &w.skip {
        println!("Skipped: {reason}.\n");
        eprintln!("[{}] skipped: {reason}", w.name);
        return;
    }
    for c in &w.commands {
        println!("- {c}");
    }
    println!();
    let _ = std::io::stdout().flush();
    let reps = w.reps.unwrap_or(reps);
    for rep in 0..reps {
        let mut order = w.targets.clone();
        if rep % 2 == 1 {
            order.reverse();
        }
        let mut measured: Vec<(Target, Vec<Sample>)> = Vec::new();
        for target in order {
            let tag = format!("[{} {}/{reps}] {}", w.name, rep + 1, target.name());
            eprintln!("{tag} ...");
            let start = Instant::now();
            match (w.measure)(env, target) {
                Ok(samples) => {
                    eprintln!(
                        "{tag}: {} ({:.1} s)",
                        Sample::brief(&samples),
                        start.elapsed().as_secs_f64()
                    );
                    results.add(w.name, target, &samples);
                    measured.push((target, samples));
                }
                Err(e) => {
                    eprintln!("{tag}: FAILED: {e}");
                    results.fail(w.name, target, e);
                }
            }
        }
        if let Some(derive) = w.derive {
            for (target, sample) in derive(&measured) {
                results.add(w.name, target, &[sample]);
            }
        }
    }
}

fn print_results(env: &Env, results: &Results, started: Instant) {
    println!("## Results\n");
    println!("{}", results.table());
    let notes = env.notes();
    if !notes.is_empty() {
        println!("Notes:");
        for n in notes {
            println!("- {n}");
        }
        println!();
    }
    let took = started.elapsed().as_secs_f64();
    println!("Measured in {took:.0} s ({:.1} min).", took / 60.0);
    if results.failed() {
        println!("\nSome measurements FAILED; see the table.");
    }
}
