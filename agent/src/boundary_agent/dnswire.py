"""DNS wire format by hand, for the common query only: one question, class IN, type A, AAAA or
ANY, no OPT record or one EDNS0 OPT record. Everything else goes to dnspython (boundary_agent.dns).

A parsed query is answered byte for byte as the dnspython path would answer it (the unit tests
compare the two): the header with QR, the query's RD, AA for an alias; the question echoed as
the client sent it; records pointing at it; an EDNS0 OPT record (payload 8192, no options) when
the query had one."""

from __future__ import annotations

import socket
import struct

TYPE_A, TYPE_AAAA, TYPE_OPT, TYPE_ANY = 1, 28, 41, 255
CLASS_IN = 1
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
OPCODE_MASK = 0x7800
RCODE_SERVFAIL = 2
RCODES_WITHOUT_QUESTION = frozenset({1, 2, 4, 5})
"""FORMERR, SERVFAIL, NOTIMP, REFUSED: an answer with one of these may leave the question out."""
OPTION_COOKIE = 10
OUR_OPT = struct.pack("!BHHIH", 0, TYPE_OPT, 8192, 0, 0)
"""The OPT record dnspython's make_response adds for an EDNS query: payload 8192, no flags."""
HEADER = struct.Struct("!HHHHHH")
RECORD_HEAD = struct.Struct("!HHIH")
"""A record's fixed part after a 2-octet compression pointer: type, class, TTL, rdata length."""
NAME_CHARACTERS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
"""Octets a label may have on the fast path: those dnspython's to_text() leaves unescaped."""


class SimpleQuery:
    """What the fast path needs of a query it understood."""

    __slots__ = ("edns", "key", "qtype", "question_end")

    def __init__(self, key: bytes, qtype: int, question_end: int, edns: bool) -> None:
        self.key = key
        """The question name's wire in lowercase, then the type: the answer cache's key."""
        self.qtype = qtype
        self.question_end = question_end
        """Where the question ends in the query's wire."""
        self.edns = edns


def parse_simple_query(wire: bytes) -> SimpleQuery | None:
    """The query, when it is one the fast path answers exactly as dnspython would; else None.
    Only the name's framing is checked here: what its labels hold is alias_name()'s concern,
    on a cache miss."""
    size = len(wire)
    if size < 17 or wire[2] & 0xF8 or wire[4:10] != b"\0\1\0\0\0\0":  # QR, opcode, counts
        return None
    arcount = wire[10] << 8 | wire[11]
    if arcount > 1:
        return None
    offset = 12
    while length := wire[offset]:
        # A pointer, a reserved label type, or past the end: dnspython's to judge.
        if length > 63:
            return None
        offset += 1 + length
        if offset >= size:
            return None
    name_end = offset + 1
    if name_end - 12 > 255 or name_end == 13:
        return None
    question_end = name_end + 4
    if question_end > size:
        return None
    qtype = wire[name_end] << 8 | wire[name_end + 1]
    if wire[name_end + 2 : question_end] != b"\0\1" or qtype not in (TYPE_A, TYPE_AAAA, TYPE_ANY):
        return None
    if arcount:
        if not _is_plain_opt(wire, question_end):
            return None
    elif question_end != size:
        return None  # trailing octets
    return SimpleQuery(wire[12 : question_end - 2].lower(), qtype, question_end, bool(arcount))


def alias_name(query: SimpleQuery) -> str | None:
    """The question name as alias lookups take it (lowercase, no trailing dot), when its labels
    hold only what an alias can (else None: no alias has such a name)."""
    key, labels, offset = query.key, [], 0
    while length := key[offset]:
        label = key[offset + 1 : offset + 1 + length]
        if not NAME_CHARACTERS.issuperset(label):
            return None
        labels.append(label)
        offset += 1 + length
    return b".".join(labels).decode("ascii")


def _is_plain_opt(wire: bytes, offset: int) -> bool:
    """Whether the rest of the wire is exactly one EDNS0 OPT record for the root, its options
    well framed and none of a kind dnspython parses itself (but a well-formed cookie)."""
    if len(wire) < offset + 11 or wire[offset] != 0:
        return False
    rtype, _, ttl, rdlength = struct.unpack_from("!HHIH", wire, offset + 1)
    if rtype != TYPE_OPT or (ttl >> 16) & 0xFF != 0:  # version 0 only
        return False
    start, end = offset + 11, offset + 11 + rdlength
    if end != len(wire):
        return False
    while start < end:
        if start + 4 > end:
            return False
        code, length = struct.unpack_from("!HH", wire, start)
        start += 4 + length
        if start > end:
            return False
        if code != OPTION_COOKIE or length not in (8, *range(16, 41)):
            return False
    return True


def address_records(addresses: list[str], ttl: int) -> tuple[int, bytes]:
    """(count, wire) of A/AAAA records for these addresses, each named by a pointer to the
    question, in the order given."""
    records = b""
    for address in addresses:
        if ":" in address:
            rdata, rtype = socket.inet_pton(socket.AF_INET6, address), TYPE_AAAA
        else:
            rdata, rtype = socket.inet_pton(socket.AF_INET, address), TYPE_A
        records += b"\xc0\x0c" + RECORD_HEAD.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata
    return len(addresses), records


def response(
    wire: bytes, query: SimpleQuery, answers: tuple[int, bytes], *, flags: int, rcode: int = 0
) -> bytes:
    """The answer to a parsed query: its id, QR + `flags` + its RD, the question as sent."""
    count, records = answers
    reply_flags = QR | flags | rcode | (wire[2] << 8 & RD)
    header = wire[:2] + struct.pack("!HHHHH", reply_flags, 1, count, 0, 1 if query.edns else 0)
    tail = OUR_OPT if query.edns else b""
    return header + wire[12 : query.question_end] + records + tail


def servfail(wire: bytes, query: SimpleQuery) -> bytes:
    return response(wire, query, (0, b""), flags=0, rcode=RCODE_SERVFAIL)


def with_id(wire: bytes, query_id: int) -> bytes:
    return struct.pack("!H", query_id) + wire[2:]


def answers_question(answer: bytes, question: bytes) -> bool:
    """A structural check that `answer` is a well-formed response to a query whose question
    section (name, type and class, as sent) is `question`: QR set, opcode QUERY, the same
    question (names compared without case), and every record well framed up to the last octet,
    with no trailing octets. A truncated answer (TC) only needs its header and question intact:
    the client asks again over TCP. The id is the caller's to check."""
    size = len(answer)
    if size < 12:
        return False
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(answer)
    if not flags & QR or flags & OPCODE_MASK:
        return False
    if qdcount == 0:
        return (flags & 0xF) in RCODES_WITHOUT_QUESTION and (
            bool(flags & TC) or _records_end(answer, 12, ancount + nscount + arcount) == size
        )
    end = 12 + len(question)
    if qdcount != 1 or end > size:
        return False
    # Upstreams echo the question as sent; the case-blind comparison is the rare way.
    if not answer.startswith(question, 12) and answer[12:end].lower() != question.lower():
        return False
    if flags & TC:
        return True
    return _records_end(answer, end, ancount + nscount + arcount, question_name=True) == size


def _records_end(wire: bytes, offset: int, count: int, question_name: bool = False) -> int:
    """Where `count` resource records starting at offset end; -1 when one is malformed. With
    question_name, the name at offset 12 is known well formed (it is the question's), so a
    record name that is only a pointer to it (most are) needs no walk."""
    size = len(wire)
    for _ in range(count):
        if question_name and offset + 1 < size and wire[offset] == 0xC0 and wire[offset + 1] == 12:
            offset += 2
        else:
            offset = _name_end(wire, offset)
        if offset < 0 or offset + 10 > size:
            return -1
        rtype, _, _, rdlength = struct.unpack_from("!HHIH", wire, offset)
        offset += 10 + rdlength
        if offset > size or (rtype == TYPE_A and rdlength != 4):
            return -1
        if rtype == TYPE_AAAA and rdlength != 16:
            return -1
    return offset


def _name_end(wire: bytes, offset: int) -> int:
    """Where the name at offset ends (after its last label or its first pointer); -1 when it,
    or a name a pointer leads to, runs past the wire, uses a reserved label type, points
    anywhere but backwards, or is longer than 255 octets."""
    size, end, length_total = len(wire), -1, 0
    limit = offset  # a pointer must lead before where it stands
    while offset < size:
        length = wire[offset]
        if length == 0:
            return offset + 1 if end < 0 else end
        if length & 0xC0 == 0xC0:
            if offset + 2 > size:
                return -1
            target = (length & 0x3F) << 8 | wire[offset + 1]
            if end < 0:
                end = offset + 2
            if target >= limit:
                return -1
            offset = limit = target
            continue
        if length > 63:
            return -1
        length_total += length + 1
        if length_total > 254:
            return -1
        offset += 1 + length
    return -1
