"""The permissions and configuration files of the hub and of a region's leaf server (the real
servers' behaviour with them: tests/security/test_bus_permissions.py)."""
import json
import stat

import pytest

from regio_common import nats_auth


def test_a_links_permissions_are_exactly_its_regions_replies_heartbeats_and_commands():
    permissions = nats_auth.link_permissions("local-2")

    assert nats_auth.link_user_name("local-2") == "region-local-2"
    assert permissions.publish == ("_INBOX.controlpanel.local-2.>", "region.local-2.status.>")
    assert permissions.subscribe == (
        "region.local-2.commands.>", "region.local-2.events.deployments.cancelled",
        "region.local-2.dead-letters.controlpanel", "$JS.local-2.API.>",
        # the acknowledgements of the control panel's consumers of this region, by name
        "$JS.ACK.REGIO_EVENTS.controlpanel-events-local-2.>",
        "$JS.ACK.REGIO_EVENTS.controlpanel-usage-local-2.>",
        "$JS.ACK.REGIO_DEAD_LETTERS.controlpanel-dead-letters-local-2.>",
        *(f"$JS.ACK.REGIO_COMMANDS.controlpanel-{name}-local-2.>"
          for name in ("provisioning", "service-deletions", "backups", "restores", "backup-deletions")))


def test_a_runner_cannot_be_named_as_a_regions_link():
    with pytest.raises(ValueError, match="region-"):
        nats_auth.check_runner_name("region-local-2")


def test_services_publish_their_own_heartbeat_and_the_control_panel_hears_every_regions():
    for service in ("builder", "controller", "ingress"):
        publish = nats_auth.service_permissions(service, "local-2").publish
        assert f"region.local-2.status.{service}" in publish
        assert not any(".status." in p and p != f"region.local-2.status.{service}" for p in publish)
    controlpanel = nats_auth.service_permissions("controlpanel", "local")
    assert "region.*.status.>" in controlpanel.subscribe
    assert "$JS.*.API.CONSUMER.MSG.NEXT.REGIO_EVENTS.*" in controlpanel.publish  # a leaf region's JetStream


def test_the_hubs_configuration_listens_for_leaf_nodes_only_when_asked():
    users = [nats_auth.link_user("local-2", "secret")]
    assert "leafnodes" not in json.loads(nats_auth.hub_config(users))
    config = json.loads(nats_auth.hub_config(users, "127.0.0.1:8723"))
    assert config["leafnodes"] == {"listen": "127.0.0.1:8723"}
    assert config["authorization"]["users"][0]["user"] == "region-local-2"


def test_a_leaf_configuration_holds_its_domain_its_users_and_its_links_credentials(tmp_path):
    users = nats_auth.users("local-2", ["runner-1"], lambda user: f"pw/{user}")
    config = json.loads(nats_auth.leaf_config("local-2", users, "nats-leaf://127.0.0.1:8723", "region-local-2",
                                              "p@ss/word", tmp_path / "store"))

    assert config["server_name"] == "regio-local-2"
    assert config["jetstream"] == {"domain": "local-2", "store_dir": str(tmp_path / "store")}
    assert [u["user"] for u in config["authorization"]["users"]][:2] == ["regio", "controlpanel"]
    assert config["leafnodes"]["remotes"] == [{"url": "nats-leaf://region-local-2:p%40ss%2Fword@127.0.0.1:8723"}]
    with pytest.raises(ValueError):
        nats_auth.leaf_config("local-2", users, "nats-leaf://x:y@127.0.0.1:8723", "region-local-2", "pw", tmp_path)


def test_a_configuration_is_written_private_and_whole(tmp_path):
    path = tmp_path / "secrets" / "nats.conf"

    assert nats_auth.write_config(path, "first\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not nats_auth.write_config(path, "first\n")  # unchanged: no reload needed
    assert nats_auth.write_config(path, "second\n")
    assert path.read_text() == "second\n"
    assert [p.name for p in path.parent.iterdir()] == ["nats.conf"]
