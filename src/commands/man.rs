//! `wasmlink man`: manual pages in roff (clap_mangen), from the same definitions as --help.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::input::{CliError, io_message};
use crate::output::{print, print_bytes};

/// Print the wasmlink(1) manual page, or write one page per subcommand into a directory.
#[derive(clap::Args)]
#[command(after_help = "\
Without -o, the page for wasmlink(1) is printed on stdout:
  wasmlink man | man -l -
With -o DIR, DIR/wasmlink.1 and one DIR/wasmlink-SUBCOMMAND.1 per subcommand (and
DIR/wasmlink-repo-add.1 and so on for nested ones) are written, replacing files of those names:
  wasmlink man -o ~/.local/share/man/man1 && man wasmlink-nm

Exit status: 0 success, 2 DIR cannot be created or written, or stdout cannot be written.")]
pub struct Args {
    /// Write one page per command into DIR (created if missing) instead of printing one.
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let cmd = crate::Cli::command();
    let Some(dir) = args.out_dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| CliError::Other(format!("man: {}", io_message(&e))))?;
        print_bytes(&out)?;
        return Ok(ExitCode::SUCCESS);
    };
    let fail =
        |e: std::io::Error| CliError::Other(format!("{}: {}", dir.display(), io_message(&e)));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    clap_mangen::generate_to(cmd, &dir).map_err(fail)?;
    print(&format!("wrote the manual pages to {}\n", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
