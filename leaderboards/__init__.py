"""The attnrepro leaderboard service: boards as data, server-side scoring, web pages."""
