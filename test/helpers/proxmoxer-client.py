"""What a proxmoxer user does against PVE, run against the simulator: prints one JSON object.

Usage: /usr/bin/python3 proxmoxer-client.py  (HOST, PORT, TOKEN_ID, TOKEN_SECRET, CA_FILE in env)
"""
import json
import os
import sys
import time

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

user, token = os.environ["TOKEN_ID"].split("!")
px = ProxmoxAPI(os.environ["HOST"], port=int(os.environ["PORT"]), user=user, token_name=token,
                token_value=os.environ["TOKEN_SECRET"], verify_ssl=os.environ["CA_FILE"])


def wait(node, upid):
    for _ in range(2000):
        s = px.nodes(node).tasks(upid).status.get()
        if s["status"] == "stopped":
            return s["exitstatus"]
        time.sleep(0.01)
    raise RuntimeError("task %s still running" % upid)


out = {}
out["version"] = px.version.get()["release"]
out["nodes"] = sorted(n["node"] for n in px.nodes.get())
out["nextid"] = int(px.cluster.nextid.get())
vms = px.cluster.resources.get(type="vm")
out["guests"] = len(vms)
ct = [v for v in vms if v["vmid"] == int(os.environ.get("VMID", "101"))][0]
node, vmid = ct["node"], ct["vmid"]
guest = px.nodes(node).lxc(vmid)
out["status"] = guest.status.current.get()["status"]
out["stop"] = wait(node, guest.status.stop.post())
out["after_stop"] = guest.status.current.get()["status"]
out["start"] = wait(node, guest.status.start.post())
out["snapshot"] = wait(node, guest.snapshot.post(snapname="proxmoxer", description="from proxmoxer"))
out["snapshots"] = [s["name"] for s in guest.snapshot.get()]
out["delsnapshot"] = wait(node, guest.snapshot("proxmoxer").delete())
out["snapshots_after"] = [s["name"] for s in guest.snapshot.get()]
out["storage"] = sorted(s["storage"] for s in px.nodes(node).storage.get())
out["pools"] = [p["poolid"] for p in px.pools.get()]
out["users"] = [u["userid"] for u in px.access.users.get()]
out["bridge"] = [i["address"] for i in px.nodes(node).network.get(type="bridge")]
out["rrd_rows"] = len(guest.rrddata.get(timeframe="hour"))
out["hostname"] = guest.config.get()["hostname"]
try:
    px.nodes(node).lxc(999999).status.current.get()
except ResourceException as e:
    out["missing"] = {"status": e.status_code, "message": e.content}
json.dump(out, sys.stdout)
