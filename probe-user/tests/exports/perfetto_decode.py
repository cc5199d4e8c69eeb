"""Decodes a Perfetto trace with Perfetto's own generated protobuf classes
(the `perfetto` package on PyPI) and prints its tracks and events as JSON
for the Rust test to check.

usage: perfetto_decode.py FILE
"""
import json
import sys

from google.protobuf.json_format import MessageToDict
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

trace = pb.Trace()
with open(sys.argv[1], "rb") as f:
    trace.ParseFromString(f.read())

tracks, events = {}, []
for p in trace.packet:
    if p.HasField("track_descriptor"):
        d = p.track_descriptor
        tracks[d.uuid] = {
            "name": d.name,
            "parent": d.parent_uuid if d.HasField("parent_uuid") else None,
            "counter": d.HasField("counter"),
        }
    if p.HasField("track_event"):
        e = p.track_event
        args = {}
        for a in e.debug_annotations:
            v = MessageToDict(a)
            v.pop("name", None)
            args[a.name] = next(iter(v.values())) if v else None
        events.append({
            "ts": p.timestamp,
            "type": pb.TrackEvent.Type.Name(e.type),
            "track": tracks[e.track_uuid]["name"],
            "name": e.name,
            "categories": list(e.categories),
            "value": e.double_counter_value if e.HasField("double_counter_value") else None,
            "args": args,
            "sequence": p.trusted_packet_sequence_id,
        })
print(json.dumps({"tracks": list(tracks.values()), "events": events}))
