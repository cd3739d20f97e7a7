"""Usage reports: the maths (usage), the CSV and the HTML page with charts."""
