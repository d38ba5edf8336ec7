"""Human renderings of results: console tables now; report.json/md/html later."""
