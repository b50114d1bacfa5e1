"""The attnrepro leaderboard service (issue 6): boards as data, server-side scoring, web pages."""
