"""Infrastructure: PostgreSQL pool and migrations, Redis, realtime fan-out, shipped assets and the guarded URL fetcher.
"""
