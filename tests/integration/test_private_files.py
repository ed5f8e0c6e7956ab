"""Files holding secrets are readable by their owner only: the local broker's
configuration (every service's password, the operator's included) and the dev secrets."""

from __future__ import annotations

import stat
from pathlib import Path

from hub_common.local_nats import LocalNatsServer
from hub_common.private_files import write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_local_brokers_configuration_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    config = 'authorization { users = [ { user: "operator", password: "s3cret-of-the-operator" } ] }'
    with LocalNatsServer(tmp_path, config=config) as server:
        written = server.store_dir / "nats-server.conf"
        assert "s3cret-of-the-operator" in written.read_text()
        assert _mode(written) == 0o600


def test_a_secrets_file_already_there_is_made_private_before_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert (path.read_text(), _mode(path)) == ("new", 0o600)
