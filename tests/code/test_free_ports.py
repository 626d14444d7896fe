"""Ports for test servers are drawn outside the kernel's ephemeral range: a port chosen by bind-and-close is
held by nothing until the server binds it (seconds later), and inside that range any connect() or bind(0)
on the machine may be handed it meanwhile."""
import socket

from faceparse.serve.testing import ephemeral_range, free_port, free_ports


def test_ports_are_free_distinct_and_outside_the_ephemeral_range():
    lo, hi = ephemeral_range()
    ports = free_ports(40)
    assert len(set(ports)) == 40
    assert not [p for p in ports if lo <= p <= hi], (lo, hi, ports)
    for p in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))   # really free


def test_exclude_and_a_client_socket_never_lands_on_a_chosen_port():
    chosen = free_ports(3)
    assert free_port(exclude=chosen) not in chosen
    # what the kernel gives an outgoing connection (bind(0)) is never one of ours
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        clients = [socket.create_connection(server.getsockname()) for _ in range(20)]
        try:
            assert not {c.getsockname()[1] for c in clients} & set(chosen)
            lo, hi = ephemeral_range()
            assert all(lo <= c.getsockname()[1] <= hi for c in clients)
        finally:
            for c in clients:
                c.close()
