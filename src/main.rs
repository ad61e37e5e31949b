//! The `sluice` binary: everything lives in the library; this only hands over the arguments.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(sluice::cli::main(&args));
}
