//! The `memorun` binary: everything lives in the library.

fn main() {
    std::process::exit(memorun::run(std::env::args_os()));
}
