"""The hosts: one SSH connection each (or this machine), the workdir, the host lock, the agent
deployed and verified, the processes a run leaves behind, and the host facts."""
