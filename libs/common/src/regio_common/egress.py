"""The host's firewall for the Docker networks that run tenants' code: what an application's
instance, or a step of its build, may reach.

They reach the internet, and of the host only the region's services for applications
(their ports on the apps network's gateway; none for builds). Everything else of the host's
networks is refused: link-local addresses (a cloud's instance metadata at 169.254.169.254),
the private and carrier-grade ranges, the host's own addresses and other Docker networks;
unless the region's settings allow a range (``REGIO_RUNNER_EGRESS_ALLOW`` for instances,
``REGIO_BUILDER_EGRESS_ALLOW`` for builds).

The rules live in a chain of our own per network, jumped to from DOCKER-USER (what the
containers send through the host) and from INPUT (what they send to the host itself), for
packets entering from the network's bridge. The chain is replaced whole on every apply
(iptables-restore is atomic), so applying again, with other settings, leaves one copy."""
import ipaddress
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What of the host's surroundings an instance never reaches unless allowed.
REFUSED = {
    4: ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
        # Azure's WireServer: a public address that answers only its own VMs, with their
        # provisioning data and certificates, like the instance metadata service.
        "168.63.129.16/32"),
    6: ("fc00::/7", "fe80::/10"),
}
# A refused connection fails at once (an SDK probing for instance metadata does not hang).
REJECT = {4: ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"],
          6: ["-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"]}
TOOL = {4: "iptables", 6: "ip6tables"}
# Docker's own hook for forwarded traffic; the engine manages IPv4 only, so IPv6 hooks FORWARD.
FORWARD_HOOK = {4: "DOCKER-USER", 6: "FORWARD"}
ALLOW_SETTING = "REGIO_RUNNER_EGRESS_ALLOW"
BUILDS_ALLOW_SETTING = "REGIO_BUILDER_EGRESS_ALLOW"
# Where the engine's embedded DNS server forwards the containers' queries from, in their
# own network namespace: these resolvers stay reachable on port 53 alone, wherever they are.
RESOLV_CONFS = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))


class InvalidEgressSetting(ValueError):
    pass


@dataclass(frozen=True)
class EgressPolicy:
    bridge: str  # the network's bridge interface on the host
    gateway: str  # the bridge's address, where the region's services for applications listen
    service_ports: tuple[int, ...]  # those services' TCP ports on the gateway
    allowed: tuple[IPNetwork, ...] = ()
    resolvers: tuple[str, ...] = ()

    @property
    def chain(self) -> str:
        # iptables names are at most 28 characters; an interface's name at most 15.
        return "REGIO-EGRESS-" + self.bridge.removeprefix("br-")

    def rules(self, family: int) -> list[list[str]]:
        """The chain's rules for IPv4 or IPv6, in order: RETURN lets a packet on, to Docker's rules."""
        rules = [["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]]
        if family == 6:  # neighbour discovery with the gateway, without which IPv6 goes nowhere
            rules += [["-p", "ipv6-icmp", "--icmpv6-type", kind, "-j", "RETURN"]
                      for kind in ("router-solicitation", "neighbour-solicitation", "neighbour-advertisement")]
        if family == 4:
            rules += [["-d", f"{self.gateway}/32", "-p", "tcp", "--dport", str(port), "-j", "RETURN"]
                      for port in self.service_ports]
        for resolver in self.resolvers:
            if ipaddress.ip_address(resolver).version == family:
                rules += [["-d", resolver, "-p", protocol, "--dport", "53", "-j", "RETURN"]
                          for protocol in ("udp", "tcp")]
        rules += [["-d", str(network), "-j", "RETURN"] for network in self.allowed if network.version == family]
        rules.append(["-m", "addrtype", "--dst-type", "LOCAL", *REJECT[family]])
        rules += [["-d", network, *REJECT[family]] for network in REFUSED[family]]
        return rules

    def jumps(self, family: int) -> list[list[str]]:
        return [[hook, "-i", self.bridge, "-j", self.chain] for hook in ("INPUT", FORWARD_HOOK[family])]


def parse_allowed(value: str, setting: str = ALLOW_SETTING) -> tuple[IPNetwork, ...]:
    """The ranges of an allow setting ("10.1.2.0/24,fd00:1::/64"); a bad one is named."""
    allowed = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            allowed.append(ipaddress.ip_network(item))
        except ValueError as e:
            raise InvalidEgressSetting(f"{setting}: {item!r} is not an IP network such as 10.1.2.0/24 "
                                       f"({e})") from None
    return tuple(allowed)


def host_resolvers(files: Iterable[Path] = RESOLV_CONFS) -> tuple[str, ...]:
    """The host's DNS servers, but those on its loopback (the engine does not forward there)."""
    found = []
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(fields[1].split("%")[0])
                except ValueError:
                    continue
                if not address.is_loopback and str(address) not in found:
                    found.append(str(address))
    return tuple(found)


def families() -> tuple[int, ...]:
    """IPv4, and IPv6 where the kernel has it (booted with ipv6.disable=1 there are no ip6tables)."""
    return (4, 6) if Path("/proc/net/if_inet6").exists() else (4,)


def apply(policy: EgressPolicy) -> None:
    """Put the policy in force for its bridge, replacing what an earlier apply left."""
    for family in families():
        table = ["*filter", f":{policy.chain} - [0:0]",
                 *(" ".join(["-A", policy.chain, *rule]) for rule in policy.rules(family)), "COMMIT", ""]
        subprocess.run([f"{TOOL[family]}-restore", "--noflush"], input="\n".join(table), text=True, check=True,
                       capture_output=True)
        for jump in policy.jumps(family):
            if subprocess.run([TOOL[family], "-C", *jump], capture_output=True).returncode != 0:
                subprocess.run([TOOL[family], "-I", jump[0], "1", *jump[1:]], check=True, capture_output=True)


def remove(policy: EgressPolicy) -> None:
    """Take the policy's rules and chain away (a network that is gone)."""
    for family in families():
        for jump in policy.jumps(family):
            while subprocess.run([TOOL[family], "-D", *jump], capture_output=True).returncode == 0:
                pass
        subprocess.run([TOOL[family], "-F", policy.chain], capture_output=True)
        subprocess.run([TOOL[family], "-X", policy.chain], capture_output=True)


def bridge_of(network_attrs: dict) -> str:
    """The host interface of a Docker bridge network, as the engine names it."""
    return (network_attrs.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{network_attrs['Id'][:12]}"
