//! Running host tools (apt, dpkg-deb, make, the cross binutils, cargo) with errors that say
//! which command failed, how, and which package provides a missing tool.

use std::process::{Command, Output, Stdio};

use crate::error::GuestError;

/// How many bytes of a failed command's output an error keeps.
const OUTPUT_TAIL: usize = 3000;

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The last [`OUTPUT_TAIL`] bytes of stdout and stderr together.
pub fn tail(out: &Output) -> String {
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    let mut start = all.len().saturating_sub(OUTPUT_TAIL);
    while !all.is_char_boundary(start) {
        start += 1;
    }
    all[start..].trim_end().to_string()
}

/// Runs `cmd` to completion with its output captured; `package` provides its program.
pub fn output(cmd: &mut Command, package: &'static str) -> Result<Output, GuestError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| GuestError::MissingTool {
            program: cmd.get_program().to_string_lossy().into_owned(),
            package,
            source,
        })
}

/// Runs `cmd` and fails unless it exits 0; returns its stdout.
pub fn run(cmd: &mut Command, package: &'static str) -> Result<String, GuestError> {
    let out = output(cmd, package)?;
    if !out.status.success() {
        return Err(GuestError::CommandFailed {
            command: describe(cmd),
            status: out.status.to_string(),
            output: tail(&out),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
