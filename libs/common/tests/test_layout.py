"""The layout of the first region and of further regions on the same machine."""
import json

import pytest

from regio_common.layout import Layout, Ports


def test_a_further_region_gets_the_first_regions_ports_shifted_by_a_hundred(tmp_path):
    first = Layout(state_dir=tmp_path)
    assert first.add_extra_region("local-2") == 1
    assert first.add_extra_region("eu-dedicated") == 2
    assert first.add_extra_region("local-2") == 1  # the same slug keeps its place
    second = first.extra_layout("local-2")
    assert second.state_dir == tmp_path / "regions" / "local-2"
    assert (second.region, second.region_domain, second.runners) == ("local-2", "local-2.regio.localhost", 1)
    assert second.ports.ingress_http == 8880 and second.ports.nats == 8822 and second.ports.apps_postgres == 8834
    assert first.extra_layout("eu-dedicated").ports.controller == 8902
    # Every port of every region differs from every other region's.
    ports = [p for layout in (first, second, first.extra_layout("eu-dedicated"))
             for p in vars(layout.ports).values()]
    assert len(ports) == len(set(ports))
    # A dedicated database server of a further region starts in its own range too.
    assert second.add_dedicated_database("org") == 8860


def test_a_removed_regions_index_is_given_to_the_next(tmp_path):
    first = Layout(state_dir=tmp_path)
    first.add_extra_region("a")
    first.add_extra_region("b")
    del first.extra_regions["a"]
    assert first.add_extra_region("c") == 1


@pytest.mark.parametrize("slug", ["Local-2", "2nd", "local_2", "a" * 32, "", "local.2", "local"])
def test_bad_slugs_are_refused(tmp_path, slug):
    with pytest.raises(ValueError):
        Layout(state_dir=tmp_path).add_extra_region(slug)


def test_layouts_are_saved_and_loaded_with_their_further_regions(tmp_path):
    first = Layout(state_dir=tmp_path)
    first.add_extra_region("local-2")
    first.save()
    second = first.extra_layout("local-2")
    second.runners = 3
    second.save()
    loaded = Layout.load(tmp_path)
    assert loaded.extra_regions == {"local-2": 1}
    assert loaded.extra_layout("local-2").runners == 3
    assert Layout.load(tmp_path / "regions" / "local-2").region == "local-2"


def test_a_region_json_written_before_regions_and_the_leaf_port_still_loads(tmp_path):
    old = {"state_dir": str(tmp_path), "region": "local", "region_domain": "local.regio.localhost", "runners": 2,
           "ports": {k: v for k, v in vars(Ports()).items() if k != "nats_leaf"} | {"caddy_admin": 8779},
           "dedicated_databases": {}}
    (tmp_path / "region.json").write_text(json.dumps(old))
    loaded = Layout.load(tmp_path)
    assert loaded.extra_regions == {} and loaded.ports.nats_leaf == 8723
