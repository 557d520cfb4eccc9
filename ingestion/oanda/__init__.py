"""OANDA v20: the client, pager and parser used by ingestion, and the local fake."""
