//! `kernel-echo --bind IP [--udp-port N] [--tcp-port N] [--util-port N]`: the reference echo
//! server as a binary of its own, for the guest's initramfs (no clap: the guest tool
//! cross-builds it, and it only takes four options). Runs until SIGINT or SIGTERM.
#![deny(unsafe_code)]

use std::process::ExitCode;

use kernel_echo::{EchoConfig, TCP_PORT, UDP_PORT};

const USAGE: &str = "usage: kernel-echo --bind IP [--udp-port N] [--tcp-port N] [--util-port N]";

fn parse(args: &[String]) -> Result<EchoConfig, String> {
    let mut cfg = EchoConfig {
        bind: std::net::Ipv4Addr::UNSPECIFIED.into(),
        udp_port: UDP_PORT,
        tcp_port: TCP_PORT,
        util_port: None,
    };
    let mut bound = false;
    let mut it = args.iter();
    while let Some(opt) = it.next() {
        let value = it.next().ok_or_else(|| format!("{opt} needs a value"))?;
        let port = || {
            value
                .parse::<u16>()
                .map_err(|e| format!("{opt} {value}: {e}"))
        };
        match opt.as_str() {
            "--bind" => {
                cfg.bind = value.parse().map_err(|e| format!("--bind {value}: {e}"))?;
                bound = true;
            }
            "--udp-port" => cfg.udp_port = port()?,
            "--tcp-port" => cfg.tcp_port = port()?,
            "--util-port" => cfg.util_port = Some(port()?),
            _ => return Err(format!("unknown option {opt}")),
        }
    }
    if !bound {
        return Err("--bind is required".into());
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kernel-echo: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match kernel_echo::serve_until_signalled(cfg, "kernel-echo") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let c = parse(&args("--bind 10.0.0.20 --util-port 1237")).unwrap();
        assert_eq!(c.bind.to_string(), "10.0.0.20");
        assert_eq!(
            (c.udp_port, c.tcp_port, c.util_port),
            (1235, 1236, Some(1237))
        );
        assert!(parse(&args("--util-port 1237")).is_err());
        assert!(parse(&args("--bind")).is_err());
        assert!(parse(&args("--bind 1.2.3.4 --frob 1")).is_err());
    }
}
