//! hello-c: the C example child of supergo. The server is C (hello.c on the shim); this
//! `main` only hands it argv over FFI and exits with its status, so that cargo builds it.

use std::ffi::{c_char, c_int, CString};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os() {
        // Arguments come from execve as C strings, so a NUL inside one cannot happen; still,
        // say so rather than panic.
        match CString::new(arg.into_vec()) {
            Ok(arg) => args.push(arg),
            Err(err) => {
                eprintln!(
                    "hello-c: argument with a NUL byte at {}",
                    err.nul_position()
                );
                return ExitCode::from(2);
            }
        }
    }
    // C's argv: mutable pointers, terminated by NULL. The strings outlive the call.
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let Ok(argc) = c_int::try_from(args.len()) else {
        eprintln!("hello-c: too many arguments");
        return ExitCode::from(2);
    };

    // SAFETY: argv holds argc valid NUL-terminated strings and a final NULL, alive until
    // hello_c_main returns; hello_c_main does not keep them.
    let status = unsafe { shim_c::hello_c_main(argc, argv.as_mut_ptr()) };
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
