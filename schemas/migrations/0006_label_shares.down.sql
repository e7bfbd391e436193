DROP TABLE IF EXISTS label_shares;
