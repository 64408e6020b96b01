//! A ceiling on policies that come from elsewhere: a process that runs modules on behalf of
//! remote clients (a cluster executor or scheduler running a SQL client's wasm functions) has
//! its own policy, the most it grants; a client's policy is admitted only within it.

use super::{ByteSize, DirMode, HumanDuration, OutputMode, Policy, StdinMode};

impl Policy {
    /// This policy as a process whose own policy is `ceiling` may run it.
    ///
    /// - **Grants** must each be one the ceiling makes, else the policy is refused: a directory
    ///   (the same host path, read-write only if the ceiling's is), a `capabilities.net` or
    ///   `capabilities.http` rule (the same rule, or any rule under the ceiling's
    ///   `network = true`), `capabilities.network`, an inherited environment variable pattern,
    ///   a host function, and inherited stdin, stdout or stderr. Explicit environment values,
    ///   clocks, randomness, arguments and captured output give the module nothing of the
    ///   host's and pass as they are.
    /// - **Limits** are the lower of the two, defaults filled in: a limit the ceiling sets caps
    ///   one this policy leaves unset, raises, or turns off (`timeout = "none"`).
    ///
    /// # Errors
    /// One line naming the first field that asks for more than the ceiling grants.
    pub fn within(&self, ceiling: &Policy) -> Result<Policy, String> {
        let beyond =
            |field: &str, what: String| Err(format!("{field}: {what} is not granted here"));
        for d in &self.dirs {
            let host = self.host_path(d);
            let granted = ceiling.dirs.iter().any(|c| {
                ceiling.host_path(c) == host
                    && (c.mode == DirMode::ReadWrite || d.mode == DirMode::ReadOnly)
            });
            if !granted {
                let mode = match d.mode {
                    DirMode::ReadOnly => "read-only",
                    DirMode::ReadWrite => "read-write",
                };
                return beyond("dirs", format!("`{}` ({mode})", host.display()));
            }
        }
        for pattern in &self.env.inherit {
            if !ceiling.env.inherit.contains(pattern) {
                return beyond("env.inherit", format!("`{pattern}`"));
            }
        }
        let (caps, top) = (&self.capabilities, &ceiling.capabilities);
        if caps.network && !top.network {
            return beyond("capabilities.network", "the whole network".into());
        }
        for rule in &caps.net {
            if !top.network && !top.net.contains(rule) {
                return beyond("capabilities.net", format!("`{rule}`"));
            }
        }
        for rule in &caps.http {
            if !top.http.contains(rule) {
                return beyond("capabilities.http", format!("`{rule}`"));
            }
        }
        for f in &caps.host_functions {
            if !top.host_functions.contains(f) {
                return beyond("capabilities.host-functions", format!("`{f}`"));
            }
        }
        if self.stdio.stdin == StdinMode::Inherit && ceiling.stdio.stdin != StdinMode::Inherit {
            return beyond("stdio.stdin", "`inherit`".into());
        }
        for (field, mine, theirs) in [
            ("stdio.stdout", self.stdio.stdout, ceiling.stdio.stdout),
            ("stdio.stderr", self.stdio.stderr, ceiling.stdio.stderr),
        ] {
            if mine == OutputMode::Inherit && theirs != OutputMode::Inherit {
                return beyond(field, "`inherit`".into());
            }
        }
        let (a, b) = (self.effective_limits(), ceiling.effective_limits());
        let mut admitted = self.clone();
        let l = &mut admitted.limits;
        l.memory = Some(ByteSize(a.memory.min(b.memory)));
        l.table_elements = Some(a.table_elements.min(b.table_elements));
        l.instances = Some(a.instances.min(b.instances));
        l.stack = Some(ByteSize(a.stack.min(b.stack)));
        l.output = Some(ByteSize(a.output.min(b.output)));
        l.timeout = Some(HumanDuration(a.timeout.min(b.timeout)));
        l.fuel = match (a.fuel, b.fuel) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        Ok(admitted)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{DEFAULT_MEMORY, DEFAULT_TIMEOUT};
    use super::*;

    fn policy(toml: &str) -> Policy {
        Policy::from_toml(toml, "test").unwrap()
    }

    #[test]
    fn the_default_ceiling_refuses_every_grant_naming_the_field() {
        let top = Policy::default();
        for (toml, want) in [
            (
                "[[dirs]]\nhost = \"/srv/data\"\nguest = \"/data\"\n",
                "dirs: `/srv/data` (read-only) is not granted here",
            ),
            (
                "[env]\ninherit = [\"HOME\"]\n",
                "env.inherit: `HOME` is not granted here",
            ),
            (
                "[capabilities]\nnet = [\"10.0.0.1:5432\"]\n",
                "capabilities.net: `10.0.0.1:5432` is not granted here",
            ),
            (
                "[capabilities]\nnetwork = true\n",
                "capabilities.network: the whole network is not granted here",
            ),
            (
                "[capabilities]\nhttp = [\"example.com\"]\n",
                "capabilities.http: `example.com` is not granted here",
            ),
            (
                "[stdio]\nstdout = \"inherit\"\n",
                "stdio.stdout: `inherit` is not granted here",
            ),
        ] {
            assert_eq!(policy(toml).within(&top).unwrap_err(), want, "{toml}");
        }
        // What gives nothing of the host's passes.
        let harmless = policy(
            "args = [\"f\"]\n[env.vars]\nLANG = \"C\"\n[stdio]\nstderr = \"capture\"\n\
             [capabilities]\nclocks = true\nrandom = \"secure\"\n",
        );
        let admitted = harmless.within(&top).unwrap();
        assert_eq!(admitted.env, harmless.env);
        assert_eq!(admitted.capabilities, harmless.capabilities);
    }

    #[test]
    fn a_grant_the_ceiling_makes_passes_and_read_write_needs_read_write() {
        let top = policy(
            "[[dirs]]\nhost = \"/srv/data\"\nguest = \"/d\"\n\
             [capabilities]\nnet = [\"10.0.0.1:5432\"]\n",
        );
        let ro = policy("[[dirs]]\nhost = \"/srv/data\"\nguest = \"/data\"\n");
        assert_eq!(ro.within(&top).unwrap().dirs, ro.dirs);
        let rw =
            policy("[[dirs]]\nhost = \"/srv/data\"\nguest = \"/data\"\nmode = \"read-write\"\n");
        assert_eq!(
            rw.within(&top).unwrap_err(),
            "dirs: `/srv/data` (read-write) is not granted here"
        );
        let other = policy("[[dirs]]\nhost = \"/srv\"\nguest = \"/data\"\n");
        assert!(other.within(&top).is_err());
        let net = policy("[capabilities]\nnet = [\"10.0.0.1:5432\"]\n");
        assert!(net.within(&top).is_ok());
        let everything = policy("[capabilities]\nnetwork = true\n");
        assert!(net.within(&everything).is_ok());
    }

    #[test]
    fn limits_are_the_lower_of_the_two_and_none_is_capped() {
        let top = Policy::default();
        let unbounded = policy("[limits]\ntimeout = \"none\"\nmemory = \"4GiB\"\n");
        let l = unbounded.within(&top).unwrap().effective_limits();
        assert_eq!(l.timeout, DEFAULT_TIMEOUT);
        assert_eq!(l.memory, DEFAULT_MEMORY);
        assert_eq!(l.fuel, None);
        let tight = policy("[limits]\ntimeout = \"2s\"\nmemory = \"16MiB\"\nfuel = 1000\n");
        let l = tight.within(&top).unwrap().effective_limits();
        assert_eq!(l.timeout, Duration::from_secs(2));
        assert_eq!(l.memory, 16 << 20);
        assert_eq!(l.fuel, Some(1000));
        let metered = policy("[limits]\nfuel = 500\n");
        let l = Policy::default()
            .within(&metered)
            .unwrap()
            .effective_limits();
        assert_eq!(l.fuel, Some(500));
    }
}
