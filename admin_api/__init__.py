"""The admin API (aiohttp): accounts, organisations, apps, keys, billing; serves the inbox."""
