//! `wasmlink completions`: a shell completion script (clap_complete).

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::input::CliError;
use crate::output::print_bytes;

/// Print a completion script for SHELL on stdout.
#[derive(clap::Args)]
#[command(after_help = "\
Install it where the shell looks for completions, e.g.:
  wasmlink completions bash > ~/.local/share/bash-completion/completions/wasmlink
  wasmlink completions zsh > ~/.zfunc/_wasmlink        (with fpath+=~/.zfunc in ~/.zshrc)
  wasmlink completions fish > ~/.config/fish/completions/wasmlink.fish
  wasmlink completions elvish >> ~/.config/elvish/rc.elv
  wasmlink completions powershell >> $PROFILE

Exit status: 0 success, 2 an unknown shell, or stdout cannot be written.")]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "wasmlink", &mut out);
    print_bytes(&out)?;
    Ok(ExitCode::SUCCESS)
}
