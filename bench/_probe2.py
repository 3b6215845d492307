import asyncio, sys, time, statistics, os
from pathlib import Path
import httpx
from bench.retrieval.run import load, SCIFACT
from bench.retrieval.stack import running_stack
from bench.retrieval.large_kb import open_large_kb

async def main(stack):
    full = load(SCIFACT, "train")
    qs = [*full.queries.values()][:100]
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=120) as client:
        large = await open_large_kb(client, stack.data_dir, full.corpus)
        t, kb = large.tenant, large.id
        for q in qs: await t.search(kb, q, 5)
        open("/tmp/probe.ready","w").close()
        n=0; s=time.perf_counter(); c=os.times()
        while time.perf_counter()-s < 25:
            await t.search(kb, qs[n%100], 5); n+=1
        print("requests", n, "per req ms", 25000/n, flush=True)

with running_stack(Path("/tmp/bench20k/data")) as stack:
    asyncio.run(main(stack))
