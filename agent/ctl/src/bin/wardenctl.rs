//! `wardenctl`: the operator CLI, a drop-in for `patronictl` where the two overlap.

fn main() -> std::process::ExitCode {
    warden_ctl::main()
}
