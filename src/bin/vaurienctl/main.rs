//! `vaurienctl`: drives a running vaurien through its control API.

use std::process::exit;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use vaurien::client::{Client, ClientError};

mod completions;
mod toxiproxy;

const USAGE: &str =
    "Usage: vaurienctl [--host URL] [--http-host HOST] [--http-port PORT] [--token TOKEN]
                  [--proxy NAME] COMMAND

Commands (on the proxy --proxy names, else the command line's):
  list-behaviors                       print the behaviors the proxy knows
  get-behavior                         print the current behavior mix
  set-behavior NAME|MIX [OPTION=VALUE...]
                                       set a behavior or mix, with options (e.g. sleep=2)
  get-backend                          print the backend address
  set-backend HOST:PORT                send new connections to HOST:PORT
  stats                                print the proxy's counters as JSON
  down                                 take the proxy down: its listener and connections close
  up                                   bring it back up, listening on the same address
  wait [--timeout SECONDS]             wait until the proxy answers (exit 1 on timeout, default 10)

Toxiproxy CLI's commands (toxiproxy-cli); the command line's proxy is named vaurien:
  list                                 the proxies: listen, upstream, enabled, toxics
  inspect NAME                         a proxy and its toxics
  toggle NAME                          enable a disabled proxy, disable an enabled one
  create -l LISTEN -u UPSTREAM NAME    start another proxy in the running process (tcp)
  delete NAME                          stop and delete a proxy
  toxic add -n NAME -t TYPE [--tox TOXICITY] [-a KEY=VALUE]... [-u|-d] PROXY
                                       add a toxic (default: downstream, toxicity 1)
  toxic update -n NAME [--tox TOXICITY] [-a KEY=VALUE]... PROXY
                                       change a toxic's toxicity and attributes
  toxic remove -n NAME PROXY           remove a toxic

Options:
  --host URL         control API address (default: $TOXIPROXY_URL, else http://localhost:8080)
  --http-host HOST   control API host, with --http-port instead of --host
  --http-port PORT   control API port (default: 8080)
  --token TOKEN      send 'Authorization: Bearer TOKEN'
  --proxy NAME       the proxy the commands above act on (default: vaurien, the command line's)
  --completions SHELL  print the completion script for bash, zsh or fish and exit
  -h, --help         print this help
  -V, --version      print the version
";

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("vaurienctl: {message}");
    exit(1)
}

fn usage_error(message: impl std::fmt::Display) -> ! {
    eprintln!("vaurienctl: {message} (see 'vaurienctl --help')");
    exit(2)
}

/// `OPTION=VALUE`: a JSON literal (number, boolean) when it parses as one, else a string.
fn option(pair: &str) -> (String, Json) {
    let Some((k, v)) = pair.split_once('=') else {
        usage_error(format!("'{pair}' is not OPTION=VALUE"))
    };
    let value = match serde_json::from_str::<Json>(v) {
        Ok(j @ (Json::Number(_) | Json::Bool(_))) => j,
        _ => Json::String(v.to_string()),
    };
    (k.trim().to_string(), value)
}

fn wait(client: &Client, args: &[String]) -> ! {
    let mut timeout = 10.0;
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        let value = match a.as_str() {
            "--timeout" => rest.next().cloned(),
            other => other.strip_prefix("--timeout=").map(str::to_string),
        };
        match value
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|t| *t >= 0.0 && t.is_finite())
        {
            Some(t) => timeout = t,
            None => usage_error(format!("wait: bad argument '{a}'")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let client = client.clone().with_timeout(Duration::from_millis(500));
    loop {
        match client.get_behavior() {
            Ok(_) => exit(0),
            // An answer, even an error status (a wrong token), means the proxy is up.
            Err(ClientError::Status(..)) => exit(0),
            Err(e) if Instant::now() >= deadline => {
                fail(format!("no answer within {timeout} s: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = getopts::Options::new();
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    opts.optopt("", "host", "", "URL");
    opts.optopt("", "http-host", "", "HOST");
    opts.optopt("", "http-port", "", "PORT");
    opts.optopt("", "token", "", "TOKEN");
    opts.optopt("", "proxy", "", "NAME");
    opts.optopt("", "completions", "", "SHELL");
    opts.optflag("h", "help", "");
    opts.optflag("V", "version", "");
    let m = opts.parse(&args).unwrap_or_else(|e| usage_error(e));
    if m.opt_present("help") {
        print!("{USAGE}");
        return;
    }
    if m.opt_present("version") {
        println!("vaurienctl {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if let Some(name) = m.opt_str("completions") {
        use vaurien::config::completions::{script, Shell};
        let Some(shell) = Shell::named(&name) else {
            usage_error(format!("--completions: '{name}' is not bash, zsh or fish"))
        };
        print!("{}", script(&completions::program(), shell));
        return;
    }
    let url = match (
        m.opt_str("host"),
        m.opt_str("http-host"),
        m.opt_str("http-port"),
    ) {
        (Some(url), None, None) => url,
        (Some(_), _, _) => usage_error("give --host or --http-host/--http-port, not both"),
        (None, None, None) if std::env::var_os("TOXIPROXY_URL").is_some() => {
            std::env::var("TOXIPROXY_URL").unwrap_or_default()
        }
        (None, host, port) => format!(
            "http://{}:{}",
            host.as_deref().unwrap_or("localhost"),
            port.as_deref().unwrap_or("8080")
        ),
    };
    let client = Client::new(&url)
        .unwrap_or_else(|e| usage_error(e))
        .with_token(m.opt_str("token"))
        .with_proxy(m.opt_str("proxy"));
    let Some((command, rest)) = m.free.split_first() else {
        usage_error("a COMMAND is needed")
    };
    let unreachable = |e: ClientError| -> ! { fail(format!("{url}: {e}")) };
    match command.as_str() {
        "list-behaviors" => println!(
            "{}",
            client
                .list_behaviors()
                .unwrap_or_else(|e| unreachable(e))
                .join(", ")
        ),
        "get-behavior" => println!(
            "{}",
            client.get_behavior().unwrap_or_else(|e| unreachable(e))
        ),
        "set-behavior" => {
            let Some((name, pairs)) = rest.split_first() else {
                usage_error("set-behavior needs a NAME or MIX")
            };
            let options: Map<String, Json> = pairs.iter().map(|p| option(p)).collect();
            match client.set_behavior(name, &options) {
                Ok(()) => println!("Behavior changed to \"{name}\""),
                Err(ClientError::Status(400, body)) => {
                    let about = body["errors"][0]["name"].as_str().unwrap_or("");
                    let description = body["errors"][0]["description"].as_str().unwrap_or("");
                    if about == "name" {
                        let known = client.list_behaviors().unwrap_or_default().join(", ");
                        println!("The request failed. Please use one of {known}");
                        eprintln!("vaurienctl: {description}");
                    } else {
                        println!("The request failed: {description}");
                    }
                    exit(1)
                }
                Err(e) => unreachable(e),
            }
        }
        "get-backend" => println!(
            "{}",
            client.get_backend().unwrap_or_else(|e| unreachable(e))
        ),
        "set-backend" => {
            let [backend] = rest else {
                usage_error("set-backend needs one HOST:PORT")
            };
            match client.set_backend(backend) {
                Ok(()) => println!("Backend changed to \"{backend}\""),
                Err(e @ ClientError::Status(..)) => {
                    println!("The request failed: {e}");
                    exit(1)
                }
                Err(e) => unreachable(e),
            }
        }
        "stats" => {
            let stats = client.stats().unwrap_or_else(|e| unreachable(e));
            println!(
                "{}",
                serde_json::to_string_pretty(&stats).unwrap_or_default()
            );
        }
        "down" | "up" => {
            let on = command == "up";
            let proxy = client.set_enabled(on).unwrap_or_else(|e| unreachable(e));
            let listen = proxy["listen"].as_str().unwrap_or("?");
            if on {
                println!("Proxy up: listening on {listen}");
            } else {
                println!("Proxy down: {listen} refuses connections");
            }
        }
        "wait" => wait(&client, rest),
        other => match toxiproxy::run(&client, other, rest) {
            Some(Ok(out)) => println!("{out}"),
            Some(Err(e)) => fail(e),
            None => usage_error(format!("unknown command '{other}'")),
        },
    }
}
