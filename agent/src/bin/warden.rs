//! `warden CONFIG`: the HA agent (a drop-in for `patroni CONFIG`).

fn main() -> std::process::ExitCode {
    warden_agent::cli::main()
}
