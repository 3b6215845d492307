import asyncio, sys, time, statistics
from pathlib import Path
import httpx
from bench.retrieval.run import load, SCIFACT
from bench.retrieval.stack import running_stack
from bench.retrieval.large_kb import open_large_kb
from bench.retrieval.latency import server_timing

async def main(stack):
    full = load(SCIFACT, "train")
    qs = [*full.queries.values()]
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=120) as client:
        large = await open_large_kb(client, stack.data_dir, full.corpus)
        t, kb = large.tenant, large.id
        for q in qs[:20]: await t.search(kb, q+" w", 5)
        for label, batch in (("uncached", qs[20:220]), ("cached", qs[20:220]), ("uncached2", [q+" x" for q in qs[220:420]]), ("cached2", [q+" x" for q in qs[220:420]])):
            ts=[]; st={}
            for q in batch:
                s=time.perf_counter(); await t.search(kb, q, 5); ts.append((time.perf_counter()-s)*1000)
                for k,v in server_timing(t.last_server_timing).items(): st.setdefault(k,[]).append(v)
            print(label, "client p50 %.1f" % statistics.median(ts), {k: round(statistics.median(v),2) for k,v in st.items()}, flush=True)
        if len(sys.argv)>1:
            input("profiling... press enter")

with running_stack(Path("/tmp/bench20k/data")) as stack:
    asyncio.run(main(stack))
