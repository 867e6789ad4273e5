//! The `trailsight` binary: a thin shell over [`trailsight::cli`].

fn main() -> std::process::ExitCode {
    trailsight::cli::main()
}
