//! `wardenctl`: the operator CLI, a drop-in for `patronictl` where the two overlap.

// Per crate until warden-agent's functions are short enough for [workspace.lints].
#![warn(clippy::too_many_lines)]

fn main() -> std::process::ExitCode {
    warden_ctl::main()
}
