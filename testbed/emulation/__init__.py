"""The emulated cluster: namespaces, veths, bridges, shaping and its sshd."""
